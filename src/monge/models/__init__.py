"""monge.models"""
