"""Wire types of the convmgr protocol (pydantic models); imports nothing else of convmgr."""
