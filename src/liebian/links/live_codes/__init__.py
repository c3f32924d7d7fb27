"""活码 (live codes): one stable URL and QR serving the currently usable target among several.

Layers as elsewhere: ``schemas`` (API shapes), ``repository`` (all SQL, including the atomic
scan claim), ``service`` (rules), ``api`` (HTTP), ``serve`` (the participant-facing answer the
redirect hot path delegates to).
"""
