"""Front ends: the ``baton`` CLI and (next) the Slack app. They render engine events."""
