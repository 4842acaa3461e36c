"""perpcore: an embeddable exchange core for perpetual contracts and crypto margin financing."""
