"""Imports every domain's models so ``Base.metadata`` knows all tables (Alembic, tests)."""

from liebian.workspaces import models as workspaces_models  # noqa: F401
