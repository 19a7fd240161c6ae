/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  query AnnealerStatus { annealer { states { state count } runsInFlight queueLength leader owner }\n    deployments(first: 100) { edges { node { id name status } } } }\n": typeof types.AnnealerStatusDocument,
    "\n  query AnnealerMachines($where: MachineWhereInput!, $first: Int, $after: Cursor, $last: Int, $before: Cursor) {\n    machines(first: $first, after: $after, last: $last, before: $before, where: $where) {\n      totalCount\n      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }\n      edges { node { id } }\n    }\n  }\n": typeof types.AnnealerMachinesDocument,
    "\n  query NodeRoleGraph($where: NodeRoleWhereInput!, $first: Int!, $after: Cursor, $parents: Int!) {\n    nodeRoles(first: $first, after: $after, where: $where) {\n      totalCount\n      pageInfo { hasNextPage endCursor }\n      edges { node { id state status cohort role { name } machine { id name } parents(first: $parents) { totalCount edges { node { id } } } } }\n    }\n  }\n": typeof types.NodeRoleGraphDocument,
    "mutation RetryOne($id: ID!) { retryNodeRole(id: $id) { nodeRole { id state } errors { field code message } } }": typeof types.RetryOneDocument,
    "mutation RetryAll($d: ID) { retryAllFailed(deploymentID: $d) { retried errors { field code message } } }": typeof types.RetryAllDocument,
    "\n  query DataCentre {\n    sites(first: 50) { totalCount edges { node { id name description location } } }\n    NEW: machines(where: {state: NEW}) { totalCount }\n    DISCOVERED: machines(where: {state: DISCOVERED}) { totalCount }\n    READY: machines(where: {state: READY}) { totalCount }\n    BUSY: machines(where: {state: BUSY}) { totalCount }\n    ERROR: machines(where: {state: ERROR}) { totalCount }\n  }\n": typeof types.DataCentreDocument,
    "\n  query SiteRacks($site: ID!, $after: Cursor) {\n    node(id: $site) {\n      __typename\n      ... on Site {\n        id\n        racks(first: 100, after: $after, orderBy: {field: NAME}) {\n          totalCount\n          pageInfo { hasNextPage endCursor }\n          edges { cursor node {\n            id name height\n            all: machines { totalCount }\n            new: machines(where: {state: NEW}) { totalCount }\n            discovered: machines(where: {state: DISCOVERED}) { totalCount }\n            ready: machines(where: {state: READY}) { totalCount }\n            busy: machines(where: {state: BUSY}) { totalCount }\n            error: machines(where: {state: ERROR}) { totalCount }\n            u1: machines(where: {uHeight: 1}) { totalCount }\n            u2: machines(where: {uHeight: 2}) { totalCount }\n            u3: machines(where: {uHeight: 3}) { totalCount }\n            u4: machines(where: {uHeight: 4}) { totalCount }\n          } }\n        }\n      }\n    }\n  }\n": typeof types.SiteRacksDocument,
    "\n  query Search($q: String!, $mac: String!) {\n    machines(first: 10, where: {or: [\n      {nameContainsFold: $q}, {serialContainsFold: $q},\n      {hasNicsWith: [{mac: $mac}]}, {hasAllocationsWith: [{address: $q}]}\n    ]}) {\n      edges { node { id name serial state rack { name } } }\n    }\n  }\n": typeof types.SearchDocument,
    "\n  query Deployments {\n    deployments(first: 100) { edges { node { id name status state } } }\n    roles(first: 200) { edges { node { id name description implicit } } }\n  }\n": typeof types.DeploymentsDocument,
    "\n  query Matrix($id: ID!) {\n    node(id: $id) {\n      __typename\n      ... on Deployment {\n        id name status state\n        nodeRoles(first: 1000) { totalCount edges { node { id state role { name } machine { id name } } } }\n      }\n    }\n  }\n": typeof types.MatrixDocument,
    "\n  mutation Bind($machine: ID!, $role: String!, $deployment: ID) {\n    bindRole(machineID: $machine, role: $role, deploymentID: $deployment) { nodeRole { id state } errors { field code message } }\n  }\n": typeof types.BindDocument,
    "query MachineByName($name: String!) { machine(name: $name) { id } }": typeof types.MachineByNameDocument,
    "mutation Commit($id: ID!) { commitDeployment(id: $id) { deployment { id status state } errors { field code message } } }": typeof types.CommitDocument,
    "mutation Propose($id: ID!) { proposeDeployment(id: $id) { deployment { id status state } errors { field code message } } }": typeof types.ProposeDocument,
    "\n  query EventHistory($after: Int!, $filter: EventFilter) {\n    events(after: $after, first: 200, filter: $filter) { lastSeq hasMore events { id seq time actor kind objectType objectID siteID rackID machineID changes } }\n  }\n": typeof types.EventHistoryDocument,
    "query EventSites { sites(first: 100) { edges { node { id name } } } }": typeof types.EventSitesDocument,
    "\n  query Machine($id: ID!, $after: Int!) {\n    node(id: $id) {\n      __typename\n      ... on Machine {\n        id name serial vendor model arch uuid cpuCount memoryBytes alive available bootenv state uPosition uHeight discovery drift discoveryConflict\n        boots(last: 5) { trace start durationMs steps { kind what at durationMs status error } }\n        rack { id name site { name } }\n        bmc { id protocol address port scheme username systemID }\n        nics(first: 50) { edges { node { id name mac speedMbps link pxe switchName switchPort } } }\n        disks(first: 50) { edges { node { id name sizeBytes kind model serial } } }\n        allocations(first: 20) { edges { node { id address purpose } } }\n        nodeRoles(first: 100, orderBy: {field: COHORT}) {\n          edges { node { id state status cohort role { name } deployment { name }\n            runs(first: 5, orderBy: {field: STARTED_AT, direction: DESC}) { edges { node { id attempt status log error startedAt finishedAt } } } } }\n        }\n        operations(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) {\n          edges { node { id action state message createdAt finishedAt result } }\n        }\n      }\n    }\n    events(after: $after, first: 50, filter: {machineIDs: [$id]}) { events { id seq time kind actor changes } }\n  }\n": typeof types.MachineDocument,
    "\n  mutation Power($machine: ID!, $action: PowerAction!) {\n    powerAction(machineID: $machine, action: $action) { operation { id state action message } errors { field code message } }\n  }\n": typeof types.PowerDocument,
    "\n  mutation PXEOnce($machine: ID!) {\n    setBootDevice(machineID: $machine, device: PXE, persistent: false) { operation { id state action message } errors { field code message } }\n  }\n": typeof types.PxeOnceDocument,
    "\n  query Rack($id: ID!) {\n    node(id: $id) {\n      __typename\n      ... on Rack {\n        id name height row position\n        site { id name }\n        machines(first: 100, orderBy: {field: U_POSITION}) {\n          totalCount\n          edges { node { id name uPosition uHeight state alive } }\n        }\n      }\n    }\n  }\n": typeof types.RackDocument,
    "\n  query RackRow($site: ID!) {\n    node(id: $site) {\n      __typename\n      ... on Site {\n        id name\n        racks(first: 100, orderBy: {field: NAME}) {\n          totalCount\n          pageInfo { hasNextPage endCursor }\n          edges { cursor node {\n            id name height\n            machines(first: 60) { edges { node { id name uPosition uHeight state alive } } }\n          } }\n        }\n      }\n    }\n  }\n": typeof types.RackRowDocument,
};
const documents: Documents = {
    "\n  query AnnealerStatus { annealer { states { state count } runsInFlight queueLength leader owner }\n    deployments(first: 100) { edges { node { id name status } } } }\n": types.AnnealerStatusDocument,
    "\n  query AnnealerMachines($where: MachineWhereInput!, $first: Int, $after: Cursor, $last: Int, $before: Cursor) {\n    machines(first: $first, after: $after, last: $last, before: $before, where: $where) {\n      totalCount\n      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }\n      edges { node { id } }\n    }\n  }\n": types.AnnealerMachinesDocument,
    "\n  query NodeRoleGraph($where: NodeRoleWhereInput!, $first: Int!, $after: Cursor, $parents: Int!) {\n    nodeRoles(first: $first, after: $after, where: $where) {\n      totalCount\n      pageInfo { hasNextPage endCursor }\n      edges { node { id state status cohort role { name } machine { id name } parents(first: $parents) { totalCount edges { node { id } } } } }\n    }\n  }\n": types.NodeRoleGraphDocument,
    "mutation RetryOne($id: ID!) { retryNodeRole(id: $id) { nodeRole { id state } errors { field code message } } }": types.RetryOneDocument,
    "mutation RetryAll($d: ID) { retryAllFailed(deploymentID: $d) { retried errors { field code message } } }": types.RetryAllDocument,
    "\n  query DataCentre {\n    sites(first: 50) { totalCount edges { node { id name description location } } }\n    NEW: machines(where: {state: NEW}) { totalCount }\n    DISCOVERED: machines(where: {state: DISCOVERED}) { totalCount }\n    READY: machines(where: {state: READY}) { totalCount }\n    BUSY: machines(where: {state: BUSY}) { totalCount }\n    ERROR: machines(where: {state: ERROR}) { totalCount }\n  }\n": types.DataCentreDocument,
    "\n  query SiteRacks($site: ID!, $after: Cursor) {\n    node(id: $site) {\n      __typename\n      ... on Site {\n        id\n        racks(first: 100, after: $after, orderBy: {field: NAME}) {\n          totalCount\n          pageInfo { hasNextPage endCursor }\n          edges { cursor node {\n            id name height\n            all: machines { totalCount }\n            new: machines(where: {state: NEW}) { totalCount }\n            discovered: machines(where: {state: DISCOVERED}) { totalCount }\n            ready: machines(where: {state: READY}) { totalCount }\n            busy: machines(where: {state: BUSY}) { totalCount }\n            error: machines(where: {state: ERROR}) { totalCount }\n            u1: machines(where: {uHeight: 1}) { totalCount }\n            u2: machines(where: {uHeight: 2}) { totalCount }\n            u3: machines(where: {uHeight: 3}) { totalCount }\n            u4: machines(where: {uHeight: 4}) { totalCount }\n          } }\n        }\n      }\n    }\n  }\n": types.SiteRacksDocument,
    "\n  query Search($q: String!, $mac: String!) {\n    machines(first: 10, where: {or: [\n      {nameContainsFold: $q}, {serialContainsFold: $q},\n      {hasNicsWith: [{mac: $mac}]}, {hasAllocationsWith: [{address: $q}]}\n    ]}) {\n      edges { node { id name serial state rack { name } } }\n    }\n  }\n": types.SearchDocument,
    "\n  query Deployments {\n    deployments(first: 100) { edges { node { id name status state } } }\n    roles(first: 200) { edges { node { id name description implicit } } }\n  }\n": types.DeploymentsDocument,
    "\n  query Matrix($id: ID!) {\n    node(id: $id) {\n      __typename\n      ... on Deployment {\n        id name status state\n        nodeRoles(first: 1000) { totalCount edges { node { id state role { name } machine { id name } } } }\n      }\n    }\n  }\n": types.MatrixDocument,
    "\n  mutation Bind($machine: ID!, $role: String!, $deployment: ID) {\n    bindRole(machineID: $machine, role: $role, deploymentID: $deployment) { nodeRole { id state } errors { field code message } }\n  }\n": types.BindDocument,
    "query MachineByName($name: String!) { machine(name: $name) { id } }": types.MachineByNameDocument,
    "mutation Commit($id: ID!) { commitDeployment(id: $id) { deployment { id status state } errors { field code message } } }": types.CommitDocument,
    "mutation Propose($id: ID!) { proposeDeployment(id: $id) { deployment { id status state } errors { field code message } } }": types.ProposeDocument,
    "\n  query EventHistory($after: Int!, $filter: EventFilter) {\n    events(after: $after, first: 200, filter: $filter) { lastSeq hasMore events { id seq time actor kind objectType objectID siteID rackID machineID changes } }\n  }\n": types.EventHistoryDocument,
    "query EventSites { sites(first: 100) { edges { node { id name } } } }": types.EventSitesDocument,
    "\n  query Machine($id: ID!, $after: Int!) {\n    node(id: $id) {\n      __typename\n      ... on Machine {\n        id name serial vendor model arch uuid cpuCount memoryBytes alive available bootenv state uPosition uHeight discovery drift discoveryConflict\n        boots(last: 5) { trace start durationMs steps { kind what at durationMs status error } }\n        rack { id name site { name } }\n        bmc { id protocol address port scheme username systemID }\n        nics(first: 50) { edges { node { id name mac speedMbps link pxe switchName switchPort } } }\n        disks(first: 50) { edges { node { id name sizeBytes kind model serial } } }\n        allocations(first: 20) { edges { node { id address purpose } } }\n        nodeRoles(first: 100, orderBy: {field: COHORT}) {\n          edges { node { id state status cohort role { name } deployment { name }\n            runs(first: 5, orderBy: {field: STARTED_AT, direction: DESC}) { edges { node { id attempt status log error startedAt finishedAt } } } } }\n        }\n        operations(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) {\n          edges { node { id action state message createdAt finishedAt result } }\n        }\n      }\n    }\n    events(after: $after, first: 50, filter: {machineIDs: [$id]}) { events { id seq time kind actor changes } }\n  }\n": types.MachineDocument,
    "\n  mutation Power($machine: ID!, $action: PowerAction!) {\n    powerAction(machineID: $machine, action: $action) { operation { id state action message } errors { field code message } }\n  }\n": types.PowerDocument,
    "\n  mutation PXEOnce($machine: ID!) {\n    setBootDevice(machineID: $machine, device: PXE, persistent: false) { operation { id state action message } errors { field code message } }\n  }\n": types.PxeOnceDocument,
    "\n  query Rack($id: ID!) {\n    node(id: $id) {\n      __typename\n      ... on Rack {\n        id name height row position\n        site { id name }\n        machines(first: 100, orderBy: {field: U_POSITION}) {\n          totalCount\n          edges { node { id name uPosition uHeight state alive } }\n        }\n      }\n    }\n  }\n": types.RackDocument,
    "\n  query RackRow($site: ID!) {\n    node(id: $site) {\n      __typename\n      ... on Site {\n        id name\n        racks(first: 100, orderBy: {field: NAME}) {\n          totalCount\n          pageInfo { hasNextPage endCursor }\n          edges { cursor node {\n            id name height\n            machines(first: 60) { edges { node { id name uPosition uHeight state alive } } }\n          } }\n        }\n      }\n    }\n  }\n": types.RackRowDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query AnnealerStatus { annealer { states { state count } runsInFlight queueLength leader owner }\n    deployments(first: 100) { edges { node { id name status } } } }\n"): (typeof documents)["\n  query AnnealerStatus { annealer { states { state count } runsInFlight queueLength leader owner }\n    deployments(first: 100) { edges { node { id name status } } } }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query AnnealerMachines($where: MachineWhereInput!, $first: Int, $after: Cursor, $last: Int, $before: Cursor) {\n    machines(first: $first, after: $after, last: $last, before: $before, where: $where) {\n      totalCount\n      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }\n      edges { node { id } }\n    }\n  }\n"): (typeof documents)["\n  query AnnealerMachines($where: MachineWhereInput!, $first: Int, $after: Cursor, $last: Int, $before: Cursor) {\n    machines(first: $first, after: $after, last: $last, before: $before, where: $where) {\n      totalCount\n      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }\n      edges { node { id } }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query NodeRoleGraph($where: NodeRoleWhereInput!, $first: Int!, $after: Cursor, $parents: Int!) {\n    nodeRoles(first: $first, after: $after, where: $where) {\n      totalCount\n      pageInfo { hasNextPage endCursor }\n      edges { node { id state status cohort role { name } machine { id name } parents(first: $parents) { totalCount edges { node { id } } } } }\n    }\n  }\n"): (typeof documents)["\n  query NodeRoleGraph($where: NodeRoleWhereInput!, $first: Int!, $after: Cursor, $parents: Int!) {\n    nodeRoles(first: $first, after: $after, where: $where) {\n      totalCount\n      pageInfo { hasNextPage endCursor }\n      edges { node { id state status cohort role { name } machine { id name } parents(first: $parents) { totalCount edges { node { id } } } } }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation RetryOne($id: ID!) { retryNodeRole(id: $id) { nodeRole { id state } errors { field code message } } }"): (typeof documents)["mutation RetryOne($id: ID!) { retryNodeRole(id: $id) { nodeRole { id state } errors { field code message } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation RetryAll($d: ID) { retryAllFailed(deploymentID: $d) { retried errors { field code message } } }"): (typeof documents)["mutation RetryAll($d: ID) { retryAllFailed(deploymentID: $d) { retried errors { field code message } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query DataCentre {\n    sites(first: 50) { totalCount edges { node { id name description location } } }\n    NEW: machines(where: {state: NEW}) { totalCount }\n    DISCOVERED: machines(where: {state: DISCOVERED}) { totalCount }\n    READY: machines(where: {state: READY}) { totalCount }\n    BUSY: machines(where: {state: BUSY}) { totalCount }\n    ERROR: machines(where: {state: ERROR}) { totalCount }\n  }\n"): (typeof documents)["\n  query DataCentre {\n    sites(first: 50) { totalCount edges { node { id name description location } } }\n    NEW: machines(where: {state: NEW}) { totalCount }\n    DISCOVERED: machines(where: {state: DISCOVERED}) { totalCount }\n    READY: machines(where: {state: READY}) { totalCount }\n    BUSY: machines(where: {state: BUSY}) { totalCount }\n    ERROR: machines(where: {state: ERROR}) { totalCount }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query SiteRacks($site: ID!, $after: Cursor) {\n    node(id: $site) {\n      __typename\n      ... on Site {\n        id\n        racks(first: 100, after: $after, orderBy: {field: NAME}) {\n          totalCount\n          pageInfo { hasNextPage endCursor }\n          edges { cursor node {\n            id name height\n            all: machines { totalCount }\n            new: machines(where: {state: NEW}) { totalCount }\n            discovered: machines(where: {state: DISCOVERED}) { totalCount }\n            ready: machines(where: {state: READY}) { totalCount }\n            busy: machines(where: {state: BUSY}) { totalCount }\n            error: machines(where: {state: ERROR}) { totalCount }\n            u1: machines(where: {uHeight: 1}) { totalCount }\n            u2: machines(where: {uHeight: 2}) { totalCount }\n            u3: machines(where: {uHeight: 3}) { totalCount }\n            u4: machines(where: {uHeight: 4}) { totalCount }\n          } }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query SiteRacks($site: ID!, $after: Cursor) {\n    node(id: $site) {\n      __typename\n      ... on Site {\n        id\n        racks(first: 100, after: $after, orderBy: {field: NAME}) {\n          totalCount\n          pageInfo { hasNextPage endCursor }\n          edges { cursor node {\n            id name height\n            all: machines { totalCount }\n            new: machines(where: {state: NEW}) { totalCount }\n            discovered: machines(where: {state: DISCOVERED}) { totalCount }\n            ready: machines(where: {state: READY}) { totalCount }\n            busy: machines(where: {state: BUSY}) { totalCount }\n            error: machines(where: {state: ERROR}) { totalCount }\n            u1: machines(where: {uHeight: 1}) { totalCount }\n            u2: machines(where: {uHeight: 2}) { totalCount }\n            u3: machines(where: {uHeight: 3}) { totalCount }\n            u4: machines(where: {uHeight: 4}) { totalCount }\n          } }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Search($q: String!, $mac: String!) {\n    machines(first: 10, where: {or: [\n      {nameContainsFold: $q}, {serialContainsFold: $q},\n      {hasNicsWith: [{mac: $mac}]}, {hasAllocationsWith: [{address: $q}]}\n    ]}) {\n      edges { node { id name serial state rack { name } } }\n    }\n  }\n"): (typeof documents)["\n  query Search($q: String!, $mac: String!) {\n    machines(first: 10, where: {or: [\n      {nameContainsFold: $q}, {serialContainsFold: $q},\n      {hasNicsWith: [{mac: $mac}]}, {hasAllocationsWith: [{address: $q}]}\n    ]}) {\n      edges { node { id name serial state rack { name } } }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Deployments {\n    deployments(first: 100) { edges { node { id name status state } } }\n    roles(first: 200) { edges { node { id name description implicit } } }\n  }\n"): (typeof documents)["\n  query Deployments {\n    deployments(first: 100) { edges { node { id name status state } } }\n    roles(first: 200) { edges { node { id name description implicit } } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Matrix($id: ID!) {\n    node(id: $id) {\n      __typename\n      ... on Deployment {\n        id name status state\n        nodeRoles(first: 1000) { totalCount edges { node { id state role { name } machine { id name } } } }\n      }\n    }\n  }\n"): (typeof documents)["\n  query Matrix($id: ID!) {\n    node(id: $id) {\n      __typename\n      ... on Deployment {\n        id name status state\n        nodeRoles(first: 1000) { totalCount edges { node { id state role { name } machine { id name } } } }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation Bind($machine: ID!, $role: String!, $deployment: ID) {\n    bindRole(machineID: $machine, role: $role, deploymentID: $deployment) { nodeRole { id state } errors { field code message } }\n  }\n"): (typeof documents)["\n  mutation Bind($machine: ID!, $role: String!, $deployment: ID) {\n    bindRole(machineID: $machine, role: $role, deploymentID: $deployment) { nodeRole { id state } errors { field code message } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query MachineByName($name: String!) { machine(name: $name) { id } }"): (typeof documents)["query MachineByName($name: String!) { machine(name: $name) { id } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation Commit($id: ID!) { commitDeployment(id: $id) { deployment { id status state } errors { field code message } } }"): (typeof documents)["mutation Commit($id: ID!) { commitDeployment(id: $id) { deployment { id status state } errors { field code message } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation Propose($id: ID!) { proposeDeployment(id: $id) { deployment { id status state } errors { field code message } } }"): (typeof documents)["mutation Propose($id: ID!) { proposeDeployment(id: $id) { deployment { id status state } errors { field code message } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query EventHistory($after: Int!, $filter: EventFilter) {\n    events(after: $after, first: 200, filter: $filter) { lastSeq hasMore events { id seq time actor kind objectType objectID siteID rackID machineID changes } }\n  }\n"): (typeof documents)["\n  query EventHistory($after: Int!, $filter: EventFilter) {\n    events(after: $after, first: 200, filter: $filter) { lastSeq hasMore events { id seq time actor kind objectType objectID siteID rackID machineID changes } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query EventSites { sites(first: 100) { edges { node { id name } } } }"): (typeof documents)["query EventSites { sites(first: 100) { edges { node { id name } } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Machine($id: ID!, $after: Int!) {\n    node(id: $id) {\n      __typename\n      ... on Machine {\n        id name serial vendor model arch uuid cpuCount memoryBytes alive available bootenv state uPosition uHeight discovery drift discoveryConflict\n        boots(last: 5) { trace start durationMs steps { kind what at durationMs status error } }\n        rack { id name site { name } }\n        bmc { id protocol address port scheme username systemID }\n        nics(first: 50) { edges { node { id name mac speedMbps link pxe switchName switchPort } } }\n        disks(first: 50) { edges { node { id name sizeBytes kind model serial } } }\n        allocations(first: 20) { edges { node { id address purpose } } }\n        nodeRoles(first: 100, orderBy: {field: COHORT}) {\n          edges { node { id state status cohort role { name } deployment { name }\n            runs(first: 5, orderBy: {field: STARTED_AT, direction: DESC}) { edges { node { id attempt status log error startedAt finishedAt } } } } }\n        }\n        operations(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) {\n          edges { node { id action state message createdAt finishedAt result } }\n        }\n      }\n    }\n    events(after: $after, first: 50, filter: {machineIDs: [$id]}) { events { id seq time kind actor changes } }\n  }\n"): (typeof documents)["\n  query Machine($id: ID!, $after: Int!) {\n    node(id: $id) {\n      __typename\n      ... on Machine {\n        id name serial vendor model arch uuid cpuCount memoryBytes alive available bootenv state uPosition uHeight discovery drift discoveryConflict\n        boots(last: 5) { trace start durationMs steps { kind what at durationMs status error } }\n        rack { id name site { name } }\n        bmc { id protocol address port scheme username systemID }\n        nics(first: 50) { edges { node { id name mac speedMbps link pxe switchName switchPort } } }\n        disks(first: 50) { edges { node { id name sizeBytes kind model serial } } }\n        allocations(first: 20) { edges { node { id address purpose } } }\n        nodeRoles(first: 100, orderBy: {field: COHORT}) {\n          edges { node { id state status cohort role { name } deployment { name }\n            runs(first: 5, orderBy: {field: STARTED_AT, direction: DESC}) { edges { node { id attempt status log error startedAt finishedAt } } } } }\n        }\n        operations(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) {\n          edges { node { id action state message createdAt finishedAt result } }\n        }\n      }\n    }\n    events(after: $after, first: 50, filter: {machineIDs: [$id]}) { events { id seq time kind actor changes } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation Power($machine: ID!, $action: PowerAction!) {\n    powerAction(machineID: $machine, action: $action) { operation { id state action message } errors { field code message } }\n  }\n"): (typeof documents)["\n  mutation Power($machine: ID!, $action: PowerAction!) {\n    powerAction(machineID: $machine, action: $action) { operation { id state action message } errors { field code message } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation PXEOnce($machine: ID!) {\n    setBootDevice(machineID: $machine, device: PXE, persistent: false) { operation { id state action message } errors { field code message } }\n  }\n"): (typeof documents)["\n  mutation PXEOnce($machine: ID!) {\n    setBootDevice(machineID: $machine, device: PXE, persistent: false) { operation { id state action message } errors { field code message } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Rack($id: ID!) {\n    node(id: $id) {\n      __typename\n      ... on Rack {\n        id name height row position\n        site { id name }\n        machines(first: 100, orderBy: {field: U_POSITION}) {\n          totalCount\n          edges { node { id name uPosition uHeight state alive } }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query Rack($id: ID!) {\n    node(id: $id) {\n      __typename\n      ... on Rack {\n        id name height row position\n        site { id name }\n        machines(first: 100, orderBy: {field: U_POSITION}) {\n          totalCount\n          edges { node { id name uPosition uHeight state alive } }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query RackRow($site: ID!) {\n    node(id: $site) {\n      __typename\n      ... on Site {\n        id name\n        racks(first: 100, orderBy: {field: NAME}) {\n          totalCount\n          pageInfo { hasNextPage endCursor }\n          edges { cursor node {\n            id name height\n            machines(first: 60) { edges { node { id name uPosition uHeight state alive } } }\n          } }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query RackRow($site: ID!) {\n    node(id: $site) {\n      __typename\n      ... on Site {\n        id name\n        racks(first: 100, orderBy: {field: NAME}) {\n          totalCount\n          pageInfo { hasNextPage endCursor }\n          edges { cursor node {\n            id name height\n            machines(first: 60) { edges { node { id name uPosition uHeight state alive } } }\n          } }\n        }\n      }\n    }\n  }\n"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;