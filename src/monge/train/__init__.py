"""monge.train"""
