"""The id arguments every tool takes, typed once."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mcp_ci_tools.domain.ids import UUID_PATTERN

__all__ = ["BuildId", "JobId", "ProjectId"]

_UUID_SCHEMA = {"format": "uuid", "pattern": UUID_PATTERN}

# Ids are plain strings to pydantic: the tool body validates them, so a bad id is audited and answered
# with an actionable message instead of the SDK's raw validation error. The schema still says "uuid".
ProjectId = Annotated[str, Field(description="from list_projects", json_schema_extra=_UUID_SCHEMA)]
BuildId = Annotated[str, Field(description="from list_builds", json_schema_extra=_UUID_SCHEMA)]
JobId = Annotated[str, Field(description="from get_build", json_schema_extra=_UUID_SCHEMA)]
