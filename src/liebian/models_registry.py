"""Imports every domain's models so ``Base.metadata`` knows all tables (Alembic, tests)."""

from liebian.analytics import models as analytics_models  # noqa: F401
from liebian.automation import models as automation_models  # noqa: F401
from liebian.campaigns import models as campaigns_models  # noqa: F401
from liebian.channels import models as channels_models  # noqa: F401
from liebian.communities import models as communities_models  # noqa: F401
from liebian.connectors.wecom import models as wecom_models  # noqa: F401
from liebian.contacts import models as contacts_models  # noqa: F401
from liebian.events import models as events_models  # noqa: F401
from liebian.links import domains as links_domains  # noqa: F401
from liebian.links import models as links_models  # noqa: F401
from liebian.links.live_codes import models as live_codes_models  # noqa: F401
from liebian.participants import models as participants_models  # noqa: F401
from liebian.rewards import models as rewards_models  # noqa: F401
from liebian.rewards.payouts import models as payouts_models  # noqa: F401
from liebian.risk import models as risk_models  # noqa: F401
from liebian.segments import models as segments_models  # noqa: F401
from liebian.team import models as team_models  # noqa: F401
from liebian.webhooks import models as webhooks_models  # noqa: F401
from liebian.workspaces import models as workspaces_models  # noqa: F401
