"""monge.experiments"""
