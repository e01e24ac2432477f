"""asstctl: assistants as code for the OpenAI Assistants API v2, with its own compatible server.

Packages (docs/architecture.md draws the flow): ``spec`` (load and validate the project's files) →
``reconcile`` (normalize, diff, plan, apply, report, through ``backends``) ; ``testing`` (the conversation
runner); ``server`` (``asstctl serve``: the Assistants API v2); ``cli`` (click, on top of everything).
The root holds only shared leaves: ``errors``, ``ownership`` (the tags asstctl puts on what it manages),
``outfile`` and ``progress``; they may import only each other and the standard library.
"""

__version__ = "0.1.0"
