"""Connectors: each speaks one outside platform's protocol (signatures, encryption, tokens).

One sub-package per platform (``wecom`` today). A connector publishes what happened on the
platform as bus topics and events; the domains that care (communities, channels) subscribe to
those and call the connector's client functions, never its internals.
"""
