"""monge.metrics"""
