"""Talking to Salesforce: sessions and the Connector that hands them out, the Salesforce CLI's auth, REST and
SOAP calls (with Salesforce's errors kept visible), metadata deploys, retries, and API-name rules."""

from runbook.salesforce.connector import (
    LOCAL_STATE_ENV,
    Connector,
    connect,
    connect_local,
    find_served_local_org,
    local_state_dir,
    login,
    parse_org,
    process_connector,
    start_local_org,
    stop_local_orgs,
)
from runbook.salesforce.session import (
    DEFAULT_API_VERSION,
    ENV_LOGIN_URL,
    ENV_PASSWORD,
    ENV_SECURITY_TOKEN,
    ENV_USERNAME,
    OrgSession,
    check_api_version,
)
from runbook.salesforce.sf_cli import ENV_SF_CLI, sf_cli_env, sf_executable

__all__ = ["DEFAULT_API_VERSION", "ENV_LOGIN_URL", "ENV_PASSWORD", "ENV_SECURITY_TOKEN", "ENV_SF_CLI", "ENV_USERNAME",
           "LOCAL_STATE_ENV", "Connector", "OrgSession", "check_api_version", "connect", "connect_local",
           "find_served_local_org", "local_state_dir", "login", "parse_org", "process_connector", "sf_cli_env",
           "sf_executable", "start_local_org", "stop_local_orgs"]
