"""Where the default store lives."""

import os
from pathlib import Path

STORE_FILENAME = "conversations.sqlite3"


def default_store_path() -> Path:
    """$CONVMGR_HOME/conversations.sqlite3, else the user data directory's."""
    home = os.environ.get("CONVMGR_HOME")
    if home:
        return Path(home).expanduser() / STORE_FILENAME
    # Imported here: only runs that use the default store pay for platformdirs.
    import platformdirs

    return Path(platformdirs.user_data_dir("convmgr", appauthor=False)) / STORE_FILENAME
