"""Discord adapter on discord.py: support channels, threads, forum posts and DMs, the
`/support` app-command group, persistent buttons and streamed, cited answers.

Named `discordbot` so it never shadows the `discord` library. Everything platform-neutral
(routing, chunking, streaming, the pipeline) lives in bot/; this package only translates.
"""
