"""`python -m services.card`: run the card service."""

from services.card.main import main

main()
