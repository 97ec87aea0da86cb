"""The work folder and the files the runbook writes: the folder's records and lock, private files written
atomically, free ports, and sfdx-project.json."""
