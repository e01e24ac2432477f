"""The conversation runner behind ``asstctl test``: conversation files (``conversations``), expectations
on replies (``expectations``), running them against a target (``runner``) and JUnit XML (``junit``).

May import asstctl.spec, asstctl.reconcile (to find deployed assistants), asstctl.backends, the offline
engine's rules (asstctl.server.engine) and the root leaves; never the CLI.
"""
