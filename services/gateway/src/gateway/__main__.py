"""`gateway` serves the API; `gateway token USER_ID [--admin]` prints a JWT."""

import argparse
import sys

from common.auth import issue_token
from common.logging import configure_logging
from common.settings import get_settings

REQUIRED_SECRETS = ("auth_jwt_secret", "admin_password", "admin_session_secret")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP API (the default)")
    token = commands.add_parser("token", help="print a JWT for a business owner")
    token.add_argument("user_id", help="the owner's Telegram user id")
    token.add_argument("--admin", action="store_true", help="with the admin role")
    token.add_argument("--hours", type=float, default=None, help="lifetime (max from settings)")
    return parser


def main(argv: list[str] | None = None) -> None:
    arguments = _parser().parse_args(argv)
    settings = get_settings()
    if arguments.command == "token":
        secret = settings.auth_jwt_secret.get_secret_value()
        if not secret:
            sys.exit("AUTH_JWT_SECRET is not set")
        if not arguments.user_id.isdecimal():
            sys.exit("USER_ID must be a decimal Telegram user id")
        hours = min(arguments.hours or settings.auth_max_token_hours, settings.auth_max_token_hours)
        print(issue_token(secret, arguments.user_id, admin=arguments.admin, hours=hours))
        return
    settings.require_secrets(*REQUIRED_SECRETS)
    configure_logging("gateway", settings.log_level)

    import uvicorn

    from gateway.app import create_app

    # uvicorn stops taking connections on SIGTERM and lets requests in flight finish.
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.gateway_port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
