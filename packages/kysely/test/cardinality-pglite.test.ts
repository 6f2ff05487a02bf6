import { defineCardinalityContract } from './cardinality-contract.js';
import { openPgliteTestDatabase } from './helpers/databases.js';

defineCardinalityContract('PGlite', openPgliteTestDatabase);
