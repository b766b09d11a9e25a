"""Reads of the resources a seedd set-up names, for `seedctl doctor`: the
subscription, the resource group and the storage account (its ARM id).

| request | answer | basis |
|---|---|---|
| `GET /subscriptions/{sub}` | 200 `{id, authorizationSource, subscriptionId, tenantId, displayName, state, subscriptionPolicies}`; `state` from config `subscriptionState` (default Enabled) | [doc] Subscriptions - Get (2022-12-01) |
| `GET /subscriptions/{sub}/resourcegroups/{rg}` | 200 `{id, name, type, location, properties: {provisioningState: Succeeded}}`, location westus | [doc] Resource Groups - Get (2021-04-01) |
| `GET …/providers/Microsoft.Storage/storageAccounts/{name}` | 200 `{id, name, type, location, kind: StorageV2, sku, properties: {provisioningState, primaryEndpoints: {blob}}}` | [doc] Storage Accounts - Get Properties |
| a path listed in config `missingResources` (compared without case) | 404 `SubscriptionNotFound` / `ResourceGroupNotFound` / `ResourceNotFound` | codes [doc] ARM troubleshooting "Resolve resource not found errors"; texts [inferred] |

Everything exists unless listed (as the README says of resource groups); the
api-version is not checked here.
"""

import arm

_STORAGE = "microsoft.storage/storageaccounts"


def is_resource(req):
    """A GET of a subscription, a resource group or a storage account."""
    segs = [s.lower() for s in req.segments]
    if req.method != "GET" or len(segs) < 2 or segs[0] != "subscriptions":
        return False
    if len(segs) in (2, 4) and (len(segs) == 2 or segs[2] == "resourcegroups"):
        return True
    return len(segs) == 8 and segs[2] == "resourcegroups" and segs[4] == "providers" and \
        "/".join(segs[5:7]) == _STORAGE


def _missing(store, req):
    with store.lock:
        listed = [p.rstrip("/").lower() for p in store.config.get("missingResources", [])]
    return req.path.rstrip("/").lower() in listed


def handle(store, req):
    segs = req.segments
    sub = segs[1]
    bad = arm.check_subscription(sub)
    if bad is not None:
        return bad
    if len(segs) == 2:
        if _missing(store, req):
            return arm.error(404, "SubscriptionNotFound",
                             "The subscription '%s' could not be found." % sub)
        with store.lock:
            state = store.config.get("subscriptionState", "Enabled")
        return arm.Response(200, arm.compact({
            "id": "/subscriptions/%s" % sub, "authorizationSource": "RoleBased",
            "subscriptionId": sub, "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "displayName": "Simulated subscription", "state": state,
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                     "quotaId": "PayAsYouGo_2014-09-01",
                                     "spendingLimit": "Off"}}), arm.JSON_UTF8)
    rg = segs[3]
    bad = arm.check_resource_group(rg)
    if bad is not None:
        return bad
    if len(segs) == 4:
        if _missing(store, req):
            return arm.error(404, "ResourceGroupNotFound",
                             "Resource group '%s' could not be found." % rg)
        return arm.Response(200, arm.compact({
            "id": "/subscriptions/%s/resourceGroups/%s" % (sub, rg), "name": rg,
            "type": "Microsoft.Resources/resourceGroups", "location": "westus",
            "properties": {"provisioningState": "Succeeded"}}), arm.JSON_UTF8)
    name = segs[7]
    if _missing(store, req):
        return arm.not_found("Microsoft.Storage/storageAccounts", name, rg)
    return arm.Response(200, arm.compact({
        "id": "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Storage/"
              "storageAccounts/%s" % (sub, rg, name),
        "name": name, "type": "Microsoft.Storage/storageAccounts", "location": "westus",
        "kind": "StorageV2", "sku": {"name": "Standard_LRS", "tier": "Standard"},
        "properties": {"provisioningState": "Succeeded",
                       "primaryEndpoints": {"blob": "https://%s.blob.core.windows.net/" % name}}
    }), arm.JSON_UTF8)
