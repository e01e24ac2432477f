"""Run engines: what produces an assistant's reply for a run (placeholder until the engine lands)."""


def build_engine(config):
    return None
