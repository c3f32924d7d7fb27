"""WeCom (企业微信) connector: per-workspace connection, callbacks, client calls, tag mirror.

- ``models``: the connection (secrets encrypted), callbacks seen (dedupe), follows, 联系我 /
  加入群聊 ways, welcome sends, mass sends and per-customer monthly receipts, corp tag mirror.
- ``client``: the WeCom server API over httpx (base URL from LIEBIAN_WECOM_API_BASE), with the
  access token cached until shortly before it expires and refetched once on 40014/42001/40001.
- ``callbacks``: signature check and decryption with wechatpy's WeChatCrypto, parsing, dedupe,
  bus topics (``TOPIC_*``) and events.
- ``service``: what the API and other domains call (connect, contact ways, welcome, mass send,
  tag sync).
"""
