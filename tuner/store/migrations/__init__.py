"""The sweep store's schema migrations (alembic): ``tuner.store.engine.migrate`` applies them."""
