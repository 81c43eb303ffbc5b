"""The convmgr dialect: PROTOCOL sections 1-9, its wire types and its method table."""
