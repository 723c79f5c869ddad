"""The owner console: a small server-rendered web app to watch and act (`tenantwatch console`).

Decisions live in small pure modules (`totp`, `auth`, `queries`, `actions`); `owners` is the
file-based account store, `reads` how views reach ClickHouse (directly, or through the
writer's loopback read API on the embedded engine), and `web` the thin aiohttp layer.
"""
