"""The card service's pure domain: channel matrix, card states, application rules."""
