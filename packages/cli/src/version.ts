/** The version of the piimg command. */
export const version = '0.1.0';
