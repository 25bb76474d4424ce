"""monge.cli"""
