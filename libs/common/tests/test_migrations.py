import asyncio

import asyncpg
from alembic import command

from common.migrate import alembic_config
from common.models import Base
from common.settings import Settings


async def _tables(settings: Settings) -> set[str]:
    url = settings.sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows} - {"alembic_version"}


def test_downgrade_to_base_and_upgrade_to_head(settings: Settings, migrated_database: str) -> None:
    config = alembic_config(settings.sqlalchemy_url)

    command.downgrade(config, "base")
    emptied = asyncio.run(_tables(settings))
    command.upgrade(config, "head")
    restored = asyncio.run(_tables(settings))

    assert emptied == set()
    assert restored == set(Base.metadata.tables)
