"""A plant of stations on one broker: the fleet view, staged rollouts of signed bundles, fleet benchmarks.

Built on the engines that scale (an MQTT broker or cluster, a Qdrant server); edge_ad adds no server of
its own. See docs/fleet.md.
"""
