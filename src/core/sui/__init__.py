"""The proxy as a citizen of the Atoma network on Sui (README "Sui"): signed node traffic, the
proxy's identity, and (later stages) chain events, wallet proofs and USDC deposits."""
