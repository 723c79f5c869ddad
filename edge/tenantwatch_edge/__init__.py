"""Enforce tenantwatch's rate-limit decisions at the edge: ASGI/WSGI middleware, Envoy rate-limit service."""

from tenantwatch_edge.asgi import EdgeMiddleware
from tenantwatch_edge.decisions import DecisionCache, Verdict
from tenantwatch_edge.enforcer import Edge
from tenantwatch_edge.headers import DRAFT
from tenantwatch_edge.wsgi import EdgeWSGI

__all__ = ["DRAFT", "DecisionCache", "Edge", "EdgeMiddleware", "EdgeWSGI", "Verdict"]
