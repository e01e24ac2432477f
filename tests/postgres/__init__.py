"""Tests of asstctl on PostgreSQL: the store on both databases, and several `asstctl serve` replicas on one."""
