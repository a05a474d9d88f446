"""Inference nodes: the live registry, health probes, load scraping, passive measurements, circuit
breakers, the score and the strategies, and the HTTP transport to them."""
