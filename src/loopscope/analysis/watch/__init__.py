"""Watch analysis (pure): inputs, apps and connections, the report and its findings."""
