"""Firebreak's delegation shims: a policy-feed client and guards for LangGraph, CrewAI,
AutoGen AgentChat and A2A. Each framework module imports its framework lazily, so install
only the extras you use (``firebreak-shim[langgraph]``, ``[crewai]``, ``[autogen]``, ``[a2a]``)."""

from firebreak_shim.feed import AgentNames, EdgeRefused, FeedClient, FeedError

__all__ = ["AgentNames", "EdgeRefused", "FeedClient", "FeedError"]
