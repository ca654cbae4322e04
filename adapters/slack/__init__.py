"""Slack adapter on slack-bolt (async): Socket Mode or HTTP Events API.

events.py (Slack event -> Inbound), blocks.py (Reply -> Block Kit pages), outbox.py
(SlackOutbox), client.py (AsyncWebClient with 429 retries), app.py (AsyncApp listeners),
runners.py (Socket Mode / HTTP).
"""
