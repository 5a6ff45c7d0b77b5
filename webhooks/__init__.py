"""isograd-relay's HTTP edge: Isograd callbacks, the admin API and the dashboard."""
