"""Views, one module per area: pages (home, images), iterations (staff), review (pairs, claims, spot-checks)."""
