"""codebook"""
