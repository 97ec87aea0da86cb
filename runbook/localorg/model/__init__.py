"""The local org's state and rules, with no HTTP in them: what the org holds and what it allows.

The SQLite store (the only SQL), the sObject schema and record ids, the seed, credentials, record writes and
object permissions, SOQL, the metadata types and their components, org settings, and the Dev Hub's scratch org
signups and allocations. The wire (``runbook.localorg.api``) parses requests, calls these, and writes
Salesforce's answers.
"""
