"""Similar-case search: NG frames remembered in Qdrant, nearest past cases on demand."""

from edge_ad.cases.store import Case, CaseStore, CaseStoreBusy, CaseStoreError, Match, open_store

__all__ = ["Case", "CaseStore", "CaseStoreBusy", "CaseStoreError", "Match", "open_store"]
