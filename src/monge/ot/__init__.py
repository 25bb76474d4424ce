"""monge.ot"""
