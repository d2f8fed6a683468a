"""How good is an avatar: lip-sync and image metrics on held-out footage, with baselines."""
