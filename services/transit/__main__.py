"""`python -m services.transit`: run the transit service."""

from services.transit.main import main

main()
