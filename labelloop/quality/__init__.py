"""Label quality: duplicates, agreement and label issues, weak rules, blind A/B evaluation."""
