"""monge.couplings"""
