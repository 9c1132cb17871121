"""`python -m common.migrate [upgrade|downgrade] [revision]`: the migration CLI of every image.

It needs no alembic.ini on disk, so a container or a Kubernetes Job runs it as is.
"""

import sys

from alembic import command
from alembic.config import Config


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "common:migrations")
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    action = args[0] if args else "upgrade"
    revision = args[1] if len(args) > 1 else ("head" if action == "upgrade" else "-1")
    config = alembic_config()
    if action == "upgrade":
        command.upgrade(config, revision)
    elif action == "downgrade":
        command.downgrade(config, revision)
    elif action == "current":
        command.current(config)
    else:
        raise SystemExit(f"unknown action {action!r}: use upgrade, downgrade or current")


if __name__ == "__main__":
    main()
