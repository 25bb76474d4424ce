"""monge.paths"""
