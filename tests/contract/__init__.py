"""Contract tests: Salesforce behaviours, against the local org or (make live) a real one."""
