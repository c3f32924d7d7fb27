"""Imports every domain's models so ``Base.metadata`` knows all tables (Alembic, tests)."""

from liebian.workspaces import models as workspaces_models  # noqa: F401
from liebian.links import models as links_models  # noqa: F401
