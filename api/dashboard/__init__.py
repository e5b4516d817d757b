"""The plant managers' dashboard: server-rendered pages (Jinja2, htmx, ECharts) served by the API at /."""
