"""monge.data"""
