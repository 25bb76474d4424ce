"""monge.solvers"""
